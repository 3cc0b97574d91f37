"""Reconciliation: compare our payments with Daraja (STK Query) or an M-Pesa statement."""
