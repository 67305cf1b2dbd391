"""The only code that speaks Redis: keys, connections, streams, results, Lua scripts."""
