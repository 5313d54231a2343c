"""kernel/dsc"""
