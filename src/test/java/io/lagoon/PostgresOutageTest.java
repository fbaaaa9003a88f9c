package io.lagoon;

import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.testing.Await;
import io.lagoon.testing.Backends;
import io.lagoon.testing.PostgresSupport;
import io.lagoon.testing.Sql;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactories;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.ConnectionFactoryMetadata;
import io.r2dbc.spi.ConnectionFactoryOptions;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * The database down and back, with the real driver's connect errors: while connects are refused
 * (a port nobody listens on), acquires fail at once with the driver's error as the cause, one probe
 * looks for the database in the background, and the pool serves again by itself when it is back.
 */
class PostgresOutageTest {

  private final String app = Backends.marker("outage");
  private ConnectionPool pool;

  /** Connects to PostgreSQL, or to a refused port while {@code down}. */
  private final class Switchable implements ConnectionFactory {
    volatile boolean down = true;
    final AtomicInteger attempts = new AtomicInteger();
    final ConnectionFactory real = PostgresSupport.connectionFactory(app);
    final ConnectionFactory refused = ConnectionFactories.get(PostgresSupport.options(app).mutate()
        .option(ConnectionFactoryOptions.HOST, "127.0.0.1")
        .option(ConnectionFactoryOptions.PORT, 1)
        .build());

    @Override
    public Publisher<? extends Connection> create() {
      attempts.incrementAndGet();
      return (down ? refused : real).create();
    }

    @Override
    public ConnectionFactoryMetadata getMetadata() {
      return real.getMetadata();
    }
  }

  @AfterEach
  void close() {
    if (pool != null) {
      pool.dispose();
    }
  }

  @Test
  void whileConnectsAreRefusedAcquiresFailAtOnceAndThePoolRecoversByItself() {
    Switchable driver = new Switchable();
    pool = ConnectionPool.builder(driver).poolName(app).maxSize(5).initialSize(0)
        .maxAcquireTime(Duration.ofSeconds(30)).build();

    Throwable first = failure(pool.create());
    assertThat(first).as("failed with the connect error, long before maxAcquireTime")
        .isInstanceOf(PoolUnavailableException.class)
        .hasMessageContaining("Pool '" + app + "'")
        .hasMessageContaining("1 failed in a row");
    assertThat(first.getCause()).as("the driver's own connect error").isNotNull()
        .isNotInstanceOf(PoolUnavailableException.class);

    int before = driver.attempts.get();
    for (int i = 0; i < 200; i++) {
      assertThat(failure(pool.create())).isInstanceOf(PoolUnavailableException.class);
    }
    assertThat(driver.attempts.get() - before)
        .as("200 failed acquires cost at most the background probe's few connects, not 200")
        .isLessThan(20);
    assertThat(pool.stats().pending()).isZero();
    assertThat(pool.stats().allocated()).isLessThanOrEqualTo(1);

    driver.down = false;
    // The probe backs off to at most 500 ms between attempts: poll well past that.
    Integer one = Flux.defer(() -> pool.withConnection(c ->
            Sql.column(c, "SELECT 1", Integer.class)))
        .retryWhen(reactor.util.retry.Retry.fixedDelay(Long.MAX_VALUE, Duration.ofMillis(50))
            .filter(PoolUnavailableException.class::isInstance))
        .timeout(Await.BOUND, Flux.error(() -> new AssertionError("the pool served nothing within "
            + Await.BOUND.toSeconds() + " s of the database's return: " + pool.stats())))
        .blockLast(Await.BOUND.plusSeconds(5));
    assertThat(one).isEqualTo(1);
    assertThat(pool.stats().idle()).isGreaterThanOrEqualTo(1);
  }

  private static Throwable failure(Mono<Connection> acquire) {
    return acquire.flatMap(c -> Mono.from(c.close()).then(Mono.<Throwable>empty()))
        .onErrorResume(Mono::just)
        .block(Duration.ofSeconds(20));
  }
}
