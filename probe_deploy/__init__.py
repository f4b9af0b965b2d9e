"""Generators of the deploy files (alert rules, the Grafana dashboard): not part of the running probe.

They run at build time (`make deploy`, `probe rules`, `probe dashboard`) and in the tests that
keep deploy/ in step with them; nothing of the stack imports them.
"""
