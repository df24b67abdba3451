"""pk.metrics"""
