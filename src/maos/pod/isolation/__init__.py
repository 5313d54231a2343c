"""pod/isolation"""
