print("trail")
