"""vsrdb.train"""
