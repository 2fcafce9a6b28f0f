"""vsrdb.data"""
