package io.lagoon.examples.webflux;

import io.r2dbc.spi.ConnectionFactory;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.context.annotation.Bean;

/**
 * A small REST API over a table of items, on Spring WebFlux and Spring's {@code DatabaseClient},
 * with Lagoon as the connection pool.
 *
 * <p>Nothing here builds the pool: Spring Boot's R2DBC auto-configuration opens {@code
 * spring.r2dbc.url}, and because that URL starts with {@code r2dbc:lagoon:}, R2DBC's {@code
 * ConnectionFactories} hands it to Lagoon's {@code ConnectionFactoryProvider}, which returns a
 * {@link io.lagoon.ConnectionPool} over the driver named next ({@code h2} or {@code postgresql}).
 * That pool is the application's {@link ConnectionFactory} bean.
 */
@SpringBootApplication
public class WebfluxExampleApplication {

  public static void main(String[] args) {
    SpringApplication.run(WebfluxExampleApplication.class, args);
  }

  /**
   * The Lagoon pool behind the {@link ConnectionFactory} bean, for {@code /pool/stats}, closed at
   * shutdown. It is exposed through a holder: registering the pool itself as a bean would add a
   * second {@code ConnectionFactory} bean, and Spring Boot's auto-configuration would back off.
   */
  @Bean(destroyMethod = "close")
  LagoonPool lagoonPool(ConnectionFactory connectionFactory) {
    return LagoonPool.behind(connectionFactory);
  }
}
