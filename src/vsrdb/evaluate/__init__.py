"""vsrdb.evaluate"""
