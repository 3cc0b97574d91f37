"""Payments: start an STK Push, take callbacks in, settle them, watch unanswered pushes."""
