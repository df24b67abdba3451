"""pk.tl"""
