"""The debugging loop: replay data at a playhead, metrics, diff, conversation-item inspection and
re-drive (the same user audio against new settings). Builds on the core, storage and the client.
"""
