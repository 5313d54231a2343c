"""A kernel that dies mid-completion: boot, ask the model, and wait to be SIGKILLed.

Usage: llm_crash_child.py DATA_DIR MODEL_URL TOKEN INTENT_JSON
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from maos.kernel.kernel import Kernel, KernelConfig
from maos.llm import FallbackChain, LlmAdapter, OpenAICompatible


async def main(data_dir: Path, url: str, intent: dict[str, object]) -> None:
    kernel = await Kernel.boot(KernelConfig(data_dir=data_dir), follow=False)
    provider = OpenAICompatible(url, "k", "gpt-test", timeout=60, retries=0)
    kernel.add_adapter("llm", LlmAdapter(FallbackChain([provider])))
    print("ASKING", flush=True)
    await kernel.submit(intent, agent_id="thinker")  # the server never answers


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[4])))
