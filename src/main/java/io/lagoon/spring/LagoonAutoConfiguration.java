package io.lagoon.spring;

import io.lagoon.ConnectionPool;
import io.r2dbc.spi.ConnectionFactory;
import org.springframework.beans.factory.ObjectProvider;
import org.springframework.boot.autoconfigure.AutoConfiguration;
import org.springframework.boot.autoconfigure.condition.ConditionalOnClass;
import org.springframework.boot.autoconfigure.condition.ConditionalOnMissingBean;
import org.springframework.boot.context.properties.EnableConfigurationProperties;
import org.springframework.boot.context.properties.bind.Binder;
import org.springframework.boot.r2dbc.ConnectionFactoryDecorator;
import org.springframework.boot.r2dbc.autoconfigure.ConnectionFactoryOptionsBuilderCustomizer;
import org.springframework.boot.r2dbc.autoconfigure.R2dbcAutoConfiguration;
import org.springframework.boot.r2dbc.autoconfigure.R2dbcConnectionDetails;
import org.springframework.boot.r2dbc.autoconfigure.R2dbcProperties;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Conditional;
import org.springframework.core.env.Environment;
import org.springframework.core.io.ResourceLoader;

/**
 * Makes the application's {@link ConnectionFactory} a Lagoon {@link ConnectionPool}, for {@code
 * r2dbc:lagoon:} URLs and plain driver URLs alike (and {@code r2dbc:pool:} ones: r2dbc-pool, which
 * {@code spring-boot-starter-data-r2dbc} brings, neither wraps Lagoon nor is wrapped by it). It
 * runs before Spring Boot's {@link R2dbcAutoConfiguration}, whose connection factory then backs
 * off; everything else of Spring Boot's R2DBC support ({@code DatabaseClient}, transactions,
 * {@code schema.sql}) works on the pool unchanged.
 *
 * <p>{@code spring.r2dbc.pool.enabled=false} turns pooling off for driver URLs, as in Spring Boot;
 * an {@code r2dbc:lagoon:} URL asks for the pool explicitly and gets it anyway. An application's
 * own {@code ConnectionFactory} bean wins over this one.
 *
 * <p>Every Lagoon pool in the context, this one or the application's own, is closed gracefully
 * when the context closes ({@link LagoonShutdown}).
 */
@AutoConfiguration(before = R2dbcAutoConfiguration.class)
@ConditionalOnClass({ConnectionFactory.class, R2dbcProperties.class})
@EnableConfigurationProperties({R2dbcProperties.class, LagoonProperties.class})
public class LagoonAutoConfiguration {

  /** The application's connection pool. */
  @Bean(destroyMethod = "dispose")
  @ConditionalOnMissingBean(ConnectionFactory.class)
  @Conditional(LagoonPoolingCondition.class)
  ConnectionPool connectionFactory(R2dbcProperties properties,
      ObjectProvider<R2dbcConnectionDetails> connectionDetails, ResourceLoader resourceLoader,
      Environment environment,
      ObjectProvider<ConnectionFactoryOptionsBuilderCustomizer> optionsCustomizers,
      ObjectProvider<ConnectionFactoryDecorator> decorators,
      ObjectProvider<ConnectionPoolBuilderCustomizer> poolCustomizers) {
    return SpringPoolFactory.create(properties, connectionDetails.getIfAvailable(),
        resourceLoader.getClassLoader(), Binder.get(environment),
        optionsCustomizers.orderedStream().toList(), decorators.orderedStream().toList(),
        poolCustomizers.orderedStream().toList());
  }

  /** Closes every Lagoon pool of the context gracefully, after the web server stopped. */
  @Bean
  @ConditionalOnMissingBean
  LagoonShutdown lagoonShutdown(ObjectProvider<ConnectionFactory> connectionFactories,
      LagoonProperties properties) {
    return new LagoonShutdown(connectionFactories, properties.getShutdownGrace());
  }
}
