"""Bookings: the lifecycle (request, approve, decline, cancel, expire), queries, the directory."""
