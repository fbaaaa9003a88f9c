#!/usr/bin/env bash
# Builds Lagoon and the benchmarks, then runs all three measurements with the short settings used
# for jmh/README.md (about 5 minutes on 2 cores). Raw output goes to jmh/target/results/.
#   bash jmh/run.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/jmh/target/results"
cd "$root"
mvn -B -q install -DskipTests
mvn -B -q -f jmh/pom.xml package
mkdir -p "$out"
{
  echo "lagoon: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src pom.xml 2>/dev/null || echo ' + uncommitted changes')"
  java -version 2>&1 | head -1
  echo "cores: $(nproc)"
} | tee "$out/env.txt"
java -jar jmh/target/benchmarks.jar AcquireReleaseBenchmark -wi 3 -i 5 -w 1s -r 1s -f 1 -prof gc \
  -rf json -rff "$out/acquire-release.json" | tee "$out/acquire-release.txt"
java -jar jmh/target/benchmarks.jar PostgresThroughputBenchmark -wi 10 -w 3s -i 5 -r 3s -f 1 \
  -rf json -rff "$out/postgres.json" | tee "$out/postgres.txt"
java -Xms1g -Xmx1g -cp jmh/target/benchmarks.jar io.lagoon.benchmarks.FairnessProbe \
  | tee "$out/fairness.txt"
