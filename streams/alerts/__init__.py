"""Negative-sentiment spike alerts: rules, evaluation over ClickHouse aggregates, signed webhook delivery.

``rules`` loads and checks the YAML rules file, ``evaluate`` decides
transitions (pure), ``store`` reads aggregates and alert state from
ClickHouse, ``service`` is the periodic evaluator (one leader), ``webhooks``
signs and delivers, ``dispatcher`` is the agent on the ``alerts`` topic.
See docs/alerts.md.
"""
