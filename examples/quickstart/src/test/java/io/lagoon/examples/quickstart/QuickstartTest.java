package io.lagoon.examples.quickstart;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.lagoon.PoolStats;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

class QuickstartTest {

  @Test
  void runsAgainstH2AndLeavesEveryConnectionClosed() {
    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    PoolStats after;
    try (PrintStream out = new PrintStream(bytes, true, StandardCharsets.UTF_8)) {
      after = Quickstart.run(null, out);
    }
    String output = bytes.toString(StandardCharsets.UTF_8);
    System.out.println(output);

    for (String expected : new String[] {
        "database: H2, in memory",
        "Inserted 50 rows in one transaction",
        "Burst: 2,000 operations, at most 200 in flight",
        "throughput",
        "queries (withConnection) 1000",
        "updates (inTransaction)  1000",
        "expected 1000 (one per committed update): OK",
        "before burst",
        "during, +",
        "after burst",
        "after close"}) {
      assertTrue(output.contains(expected), () -> "missing '" + expected + "' in:\n" + output);
    }

    assertEquals(0, after.allocated(), after::toString);
    assertEquals(0, after.acquired(), after::toString);
    assertEquals(0, after.pending(), after::toString);
    assertEquals(after.created(), after.closed(), after::toString);
    // the DDL and the insert, the burst, the final check and the DROP
    assertEquals(2 + Quickstart.OPERATIONS + 2, after.acquires(), after::toString);
    assertEquals(0, after.timeouts() + after.rejections() + after.createFailures(),
        after::toString);
  }

  @Test
  void percentileIsNearestRank() {
    long[] sorted = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    assertEquals(5, Quickstart.percentile(sorted, 50));
    assertEquals(9, Quickstart.percentile(sorted, 90));
    assertEquals(10, Quickstart.percentile(sorted, 99));
    assertEquals(7, Quickstart.percentile(new long[] {7}, 50));
  }

  @Test
  void redactsThePasswordOnly() {
    assertEquals("r2dbc:postgresql://scott:***@db:5432/shop",
        Quickstart.redact("r2dbc:postgresql://scott:tiger@db:5432/shop"));
    assertEquals("r2dbc:postgresql://scott@db/shop",
        Quickstart.redact("r2dbc:postgresql://scott@db/shop"));
  }
}
