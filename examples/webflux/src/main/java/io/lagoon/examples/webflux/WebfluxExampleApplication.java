package io.lagoon.examples.webflux;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;

/**
 * A small REST API over a table of items, on Spring WebFlux and Spring's {@code DatabaseClient},
 * with Lagoon as the connection pool.
 *
 * <p>Nothing here builds, finds or closes the pool: with Lagoon on the class path, its Spring Boot
 * auto-configuration makes the application's {@code ConnectionFactory} a {@link
 * io.lagoon.ConnectionPool} over {@code spring.r2dbc.url} (a plain driver URL), configured by the
 * {@code spring.r2dbc.pool.*} and {@code lagoon.pool.*} properties, closes it gracefully when the
 * application stops, and adds its health indicator and meters to the actuator.
 */
@SpringBootApplication
public class WebfluxExampleApplication {

  public static void main(String[] args) {
    SpringApplication.run(WebfluxExampleApplication.class, args);
  }
}
