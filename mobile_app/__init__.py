"""mobile_app"""
