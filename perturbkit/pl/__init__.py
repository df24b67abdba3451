"""pk.pl"""
