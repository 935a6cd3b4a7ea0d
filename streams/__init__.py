"""moodwire streaming service: Faust app, ClickHouse sink, alert rules, web API and CLI."""
