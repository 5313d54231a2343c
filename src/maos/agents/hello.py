"""The smallest MAOS agent: write a file, read it back, show the label the kernel gave it.

    maos agent run src/maos/agents/hello.py --ring 3

With the default grants (read and write the task's workspace) both requests commit; the
console shows one line per request, and this script's output after it.
"""

from maos import sdk

sdk.fs.write("hello.txt", "Hello from a pod.\n", key="hello-write")
back = sdk.fs.read("hello.txt")
label = back.label
print(f"{back.value['content'].strip()} (labelled {label.conf}, {label.integrity})")
