"""commander"""
