"""Operations: admin accounts, client records and privacy (forgetting a client), metrics."""
