"""The files a person gives a node: key and roster files (reading, writing, permissions).

The formats themselves are pure and live in p2pfl.protocol; this package adds the file system
and turns a format's error into a UserError naming the file.
"""
