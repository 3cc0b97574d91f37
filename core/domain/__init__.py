"""Pure domain: state machines, money, phone numbers, slots. No I/O imports here."""
