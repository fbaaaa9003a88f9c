package io.lagoon.examples.webflux;

import io.lagoon.ConnectionPool;
import io.lagoon.PoolStats;
import org.springframework.web.bind.annotation.GetMapping;
import org.springframework.web.bind.annotation.RestController;

/** {@code GET /pool/stats}: a snapshot of the Lagoon pool's gauges and counters. */
@RestController
public class PoolController {

  private final ConnectionPool pool;

  /** The application's {@code ConnectionFactory} bean is the pool itself. */
  public PoolController(ConnectionPool pool) {
    this.pool = pool;
  }

  @GetMapping("/pool/stats")
  public PoolStats stats() {
    return pool.stats();
  }
}
