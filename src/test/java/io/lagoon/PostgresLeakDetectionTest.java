package io.lagoon;

import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.testing.Backends;
import io.lagoon.testing.CapturedLogs;
import io.lagoon.testing.PostgresSupport;
import io.lagoon.testing.Sql;
import io.r2dbc.spi.Connection;
import java.time.Duration;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Mono;
import reactor.test.scheduler.VirtualTimeScheduler;

/**
 * Leak detection over a real PostgreSQL connection. The pool's timers and clock run in virtual
 * time while the driver does real I/O, so the threshold passes exactly when the test says.
 */
class PostgresLeakDetectionTest {

  private static final Duration BOUND = Duration.ofSeconds(10);

  private final String app = Backends.marker("leak");
  private final VirtualTimeScheduler time = VirtualTimeScheduler.create();
  private ConnectionPool pool;

  @AfterEach
  void close() {
    if (pool != null) {
      pool.dispose();
    }
    time.dispose();
  }

  private static Mono<String> text(Connection c, String sql) {
    return Sql.text(c, sql).single();
  }

  @Test
  void aConnectionHeldPastTheThresholdIsReportedWithItsBorrowSiteAndStillWorks() {
    pool = ConnectionPool.builder(PostgresSupport.connectionFactory(app))
        .poolName(app).maxSize(2).initialSize(0).scheduler(time)
        .leakDetectionThreshold(Duration.ofSeconds(30)).build();
    String log;
    try (CapturedLogs logs = CapturedLogs.start(false)) {
      Connection held = pool.create().block(BOUND);
      assertThat(text(held, "SELECT current_setting('application_name')").block(BOUND))
          .isEqualTo(app);
      time.advanceTimeBy(Duration.ofSeconds(29));
      assertThat(logs.text()).doesNotContain("has been lent for");
      time.advanceTimeBy(Duration.ofSeconds(1)); // housekeeping every 15 s: at 30 s
      assertThat(logs.text()).contains("Pool '" + app + "': a connection has been lent for"
          + " 30000 ms, longer than leakDetectionThreshold (30000 ms)");
      assertThat(text(held, "SELECT 'still usable'").block(BOUND)).isEqualTo("still usable");
      time.advanceTimeBy(Duration.ofSeconds(15));
      Mono.from(held.close()).block(BOUND);
      log = logs.text();
    }
    String site = log.substring(log.indexOf("it was borrowed here:"));
    assertThat(site.split("\\R")[2].strip()).startsWith("at io.lagoon.PostgresLeakDetectionTest"
        + ".aConnectionHeldPastTheThresholdIsReportedWithItsBorrowSiteAndStillWorks(");
    assertThat(log.split("has been lent for", -1)).as("one warning for the lend").hasSize(2);
    assertThat(log).contains("Pool '" + app + "': the connection reported as a possible leak came"
        + " back after 45000 ms");
    assertThat(pool.stats().leaks()).isEqualTo(1);
    assertThat(pool.stats().idle()).as("given back in working order: pooled again").isEqualTo(1);
  }
}
