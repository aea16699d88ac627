"""The chatglm.cpp engine: `engine.py` (ChatglmCppEngine and its one-slot runner; imports
chatglm_cpp in load()). Importing this package imports nothing of it."""
