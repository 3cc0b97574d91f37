"""The channel-neutral booking conversation; state lives in the database (dialog_states)."""
