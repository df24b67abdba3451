"""pk.models"""
