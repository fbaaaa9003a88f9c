package io.lagoon.spring;

import org.springframework.boot.autoconfigure.condition.ConditionOutcome;
import org.springframework.boot.autoconfigure.condition.SpringBootCondition;
import org.springframework.context.annotation.ConditionContext;
import org.springframework.core.env.Environment;
import org.springframework.core.type.AnnotatedTypeMetadata;

/**
 * Matches unless pooling is off: {@code spring.r2dbc.pool.enabled=false} with a URL that is not an
 * {@code r2dbc:lagoon:} one.
 */
class LagoonPoolingCondition extends SpringBootCondition {

  @Override
  public ConditionOutcome getMatchOutcome(ConditionContext context,
      AnnotatedTypeMetadata metadata) {
    Environment env = context.getEnvironment();
    String url = env.getProperty("spring.r2dbc.url", "");
    if (url.strip().startsWith("r2dbc:lagoon:")) {
      return ConditionOutcome.match("spring.r2dbc.url is an r2dbc:lagoon: URL");
    }
    if (!env.getProperty("spring.r2dbc.pool.enabled", Boolean.class, true)) {
      return ConditionOutcome.noMatch("spring.r2dbc.pool.enabled is false");
    }
    return ConditionOutcome.match("pooling is enabled");
  }
}
