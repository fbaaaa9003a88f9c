package io.lagoon.examples.webflux;

import io.lagoon.ConnectionPool;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.Wrapped;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The application's Lagoon pool, found behind Spring's {@link ConnectionFactory} bean.
 *
 * <p>Spring Boot does not hand the pool out as is: its bean is an {@code
 * OptionsCapableConnectionFactory} that wraps the pool (to remember the URL's options) and
 * delegates {@code create()} to it. That wrapper has no {@code close()}, so Spring would never
 * close the pool: {@link #close()} does, when the application shuts down.
 *
 * @param pool the pool; its {@code stats()} show what the application's connections are doing
 */
public record LagoonPool(ConnectionPool pool) {

  private static final Logger log = LoggerFactory.getLogger(LagoonPool.class);

  /** How long lent connections may still finish their work when the application shuts down. */
  static final Duration CLOSE_GRACE = Duration.ofSeconds(10);

  /**
   * Finds the Lagoon pool in {@code connectionFactory}: the factory itself or one it wraps,
   * following {@link Wrapped#unwrap()}.
   *
   * @throws IllegalStateException if there is none, for example because {@code spring.r2dbc.url}
   *     does not start with {@code r2dbc:lagoon:}
   */
  public static LagoonPool behind(ConnectionFactory connectionFactory) {
    List<String> seen = new ArrayList<>();
    Object current = connectionFactory;
    while (current instanceof ConnectionFactory factory && seen.size() < 10) {
      seen.add(factory.getClass().getName());
      if (factory instanceof ConnectionPool pool) {
        log.info("Connection pool: Lagoon '{}' (maxSize {}) over {}; ConnectionFactory bean: {}",
            pool.name(), pool.stats().maxSize(), pool.getMetadata().getName(),
            String.join(" wrapping ", seen));
        return new LagoonPool(pool);
      }
      current = factory instanceof Wrapped<?> wrapped ? wrapped.unwrap() : null;
    }
    throw new IllegalStateException("The ConnectionFactory bean is not a Lagoon ConnectionPool"
        + " and wraps none (found " + String.join(" wrapping ", seen) + "). Set"
        + " spring.r2dbc.url to an r2dbc:lagoon:<driver>:... URL and keep io.r2dbc:r2dbc-pool"
        + " off the class path.");
  }

  /**
   * Closes the pool: no new acquires; idle connections close at once, lent ones when they come
   * back or after {@link #CLOSE_GRACE}. Blocks until every connection is closed; Spring calls it
   * at shutdown, after the web server has stopped taking requests.
   */
  public void close() {
    pool.closeGracefully(CLOSE_GRACE).block(CLOSE_GRACE.plusSeconds(5));
    log.info("Closed Lagoon pool '{}': {}", pool.name(), pool.stats());
  }
}
