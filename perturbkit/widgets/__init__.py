"""pk.widgets"""
