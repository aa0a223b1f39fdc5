# Pinned versions of the stack, shared by scripts/, the tests and docker-compose.yml.
# QuestDB 9.3.x runs on Java 17 (9.4+ needs Java 25).
QUESTDB_VERSION=9.3.4
# Debian bookworm's packages (the official images in docker-compose.yml use the same versions).
PROMETHEUS_VERSION=2.42.0
ALERTMANAGER_VERSION=0.25.0
