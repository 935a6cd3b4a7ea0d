"""The pipeline stages in the order an event meets them: validate (records, events) -> classify -> mask -> store; agents run them."""
