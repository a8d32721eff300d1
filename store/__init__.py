"""What the service keeps: settings, tables, blob storage and data-access functions."""
