package io.lagoon.spring;

import io.lagoon.ConnectionPool;
import io.r2dbc.spi.ConnectionFactory;
import java.util.LinkedHashMap;
import java.util.Map;
import org.springframework.boot.autoconfigure.AutoConfiguration;
import org.springframework.boot.autoconfigure.condition.ConditionalOnBean;
import org.springframework.boot.autoconfigure.condition.ConditionalOnClass;
import org.springframework.boot.autoconfigure.condition.ConditionalOnMissingBean;
import org.springframework.boot.health.autoconfigure.contributor.ConditionalOnEnabledHealthIndicator;
import org.springframework.boot.health.contributor.CompositeReactiveHealthContributor;
import org.springframework.boot.health.contributor.ReactiveHealthContributor;
import org.springframework.boot.r2dbc.health.ConnectionFactoryHealthIndicator;
import org.springframework.context.annotation.Bean;

/**
 * The {@code r2dbc} health contributor, in place of Spring Boot's: a Lagoon pool gets a {@link
 * LagoonHealthIndicator}, which never queues behind the application nor reports DOWN because the
 * pool is busy; any other connection factory keeps Spring Boot's indicator. Like Spring Boot's, it
 * is off with {@code management.health.r2dbc.enabled=false} and backs off when the application has
 * a bean named {@code r2dbcHealthIndicator} or {@code r2dbcHealthContributor}.
 */
@AutoConfiguration(after = LagoonAutoConfiguration.class, beforeName =
    "org.springframework.boot.r2dbc.autoconfigure.health.ConnectionFactoryHealthContributorAutoConfiguration")
@ConditionalOnClass({ConnectionFactory.class, ConditionalOnEnabledHealthIndicator.class,
    ConnectionFactoryHealthIndicator.class})
@ConditionalOnBean(ConnectionFactory.class)
@ConditionalOnEnabledHealthIndicator("r2dbc")
public class LagoonHealthAutoConfiguration {

  @Bean
  @ConditionalOnMissingBean(name = {"r2dbcHealthIndicator", "r2dbcHealthContributor"})
  ReactiveHealthContributor r2dbcHealthContributor(Map<String, ConnectionFactory> factories,
      LagoonProperties properties) {
    Map<String, ReactiveHealthContributor> contributors = new LinkedHashMap<>();
    factories.forEach((name, factory) -> {
      ConnectionPool pool = LagoonShutdown.find(factory);
      contributors.put(name, pool != null
          ? new LagoonHealthIndicator(pool, properties.getHealth().getTimeout())
          : new ConnectionFactoryHealthIndicator(factory));
    });
    return contributors.size() == 1 ? contributors.values().iterator().next()
        : CompositeReactiveHealthContributor.fromMap(contributors);
  }
}
