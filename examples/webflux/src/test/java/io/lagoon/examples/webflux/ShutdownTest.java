package io.lagoon.examples.webflux;

import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.ConnectionPool;
import io.lagoon.PoolStats;
import org.junit.jupiter.api.Test;
import org.springframework.boot.builder.SpringApplicationBuilder;
import org.springframework.context.ConfigurableApplicationContext;

/**
 * Stopping the application closes the Lagoon pool and every connection it opened, with no code in
 * the application: Lagoon's auto-configuration does it.
 */
class ShutdownTest {

  @Test
  void closingTheApplicationClosesThePool() {
    ConnectionPool pool;
    try (ConfigurableApplicationContext context =
        new SpringApplicationBuilder(WebfluxExampleApplication.class)
            .run("--server.port=0",
                "--spring.r2dbc.url=r2dbc:h2:mem:///shutdown?options=DB_CLOSE_DELAY=-1",
                "--spring.r2dbc.pool.max-size=4", "--lagoon.pool.pool-name=shutdown")) {
      pool = context.getBean(ConnectionPool.class);
      assertThat(pool.name()).isEqualTo("shutdown");
      assertThat(pool.stats().acquires()).as("schema.sql ran through the pool").isPositive();
      assertThat(pool.isDisposed()).isFalse();
    }
    PoolStats stats = pool.stats();
    assertThat(pool.isDisposed()).isTrue();
    assertThat(stats.allocated()).as("%s", stats).isZero();
    assertThat(stats.closed()).as("%s", stats).isEqualTo(stats.created());
  }
}
