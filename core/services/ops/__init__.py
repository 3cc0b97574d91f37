"""Operations: admin accounts, privacy (forgetting a client), metrics."""
