package io.lagoon;

import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.internal.PoolOptions;
import java.io.IOException;
import java.io.InputStream;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/**
 * Every pool option has exactly one Spring property: Spring Boot's own under spring.r2dbc.pool.*,
 * Lagoon's under lagoon.pool.*, as the configuration processor generated their metadata.
 */
class LagoonPropertiesMetadataTest {

  /** Property names in every spring-configuration-metadata.json on the class path. */
  private static List<String> propertyNames() throws IOException {
    List<String> names = new ArrayList<>();
    Pattern name = Pattern.compile("\"name\"\\s*:\\s*\"([^\"]+)\"");
    for (URL url : Collections.list(LagoonPropertiesMetadataTest.class.getClassLoader()
        .getResources("META-INF/spring-configuration-metadata.json"))) {
      try (InputStream in = url.openStream()) {
        Matcher m = name.matcher(new String(in.readAllBytes(), StandardCharsets.UTF_8));
        while (m.find()) {
          names.add(m.group(1));
        }
      }
    }
    return names;
  }

  private static String kebab(String option) {
    return option.replaceAll("([A-Z])", "-$1").toLowerCase(Locale.ROOT);
  }

  @Test
  void everyPoolOptionHasExactlyOneProperty() throws IOException {
    List<String> names = propertyNames();
    for (String option : PoolOptions.names()) {
      if (Set.of("postAllocate", "preRelease").contains(option)) {
        continue; // functions: a ConnectionPoolBuilderCustomizer bean sets them
      }
      String spring = "spring.r2dbc.pool." + kebab(option);
      String lagoon = "lagoon.pool." + kebab(option);
      assertThat(names.contains(spring) ^ names.contains(lagoon))
          .as("exactly one of %s and %s is in the metadata", spring, lagoon).isTrue();
    }
    assertThat(names).contains("lagoon.shutdown-grace", "lagoon.health.timeout",
        "lagoon.metrics.naming", "lagoon.metrics.enabled");
  }
}
