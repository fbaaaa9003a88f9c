package io.lagoon.examples.webflux;

import io.lagoon.PoolStats;
import org.springframework.web.bind.annotation.GetMapping;
import org.springframework.web.bind.annotation.RestController;

/** {@code GET /pool/stats}: a snapshot of the Lagoon pool's gauges and counters. */
@RestController
public class PoolController {

  private final LagoonPool lagoon;

  public PoolController(LagoonPool lagoon) {
    this.lagoon = lagoon;
  }

  @GetMapping("/pool/stats")
  public PoolStats stats() {
    return lagoon.pool().stats();
  }
}
