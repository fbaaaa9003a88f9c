package io.lagoon.internal;

import io.lagoon.PoolStats;
import io.lagoon.jmx.ConnectionPoolMXBean;
import java.lang.management.ManagementFactory;
import java.util.function.Supplier;
import javax.management.JMException;
import javax.management.MBeanServer;
import javax.management.ObjectName;
import reactor.core.publisher.Mono;

/** Registers a pool's MXBean on the platform MBean server, and unregisters it. */
public final class JmxRegistration {

  private final ObjectName name;

  private JmxRegistration(ObjectName name) {
    this.name = name;
  }

  /**
   * Registers the pool; fails with an IllegalArgumentException naming the pool when the name is
   * taken (two pools with the same poolName) or not usable in an ObjectName.
   */
  public static JmxRegistration register(String poolName, Supplier<PoolStats> stats,
      Supplier<Mono<Void>> softEvict) {
    try {
      ObjectName name = new ObjectName("io.lagoon:type=ConnectionPool,name="
          + ObjectName.quote(poolName));
      MBeanServer server = ManagementFactory.getPlatformMBeanServer();
      server.registerMBean(new View(poolName, stats, softEvict), name);
      return new JmxRegistration(name);
    } catch (JMException e) {
      throw new IllegalArgumentException("registerJmx: cannot register pool '" + poolName
          + "' (" + e.getMessage() + "); give each pool a distinct poolName", e);
    }
  }

  public void unregister() {
    try {
      ManagementFactory.getPlatformMBeanServer().unregisterMBean(name);
    } catch (JMException e) {
      // already gone
    }
  }

  private record View(String poolName, Supplier<PoolStats> stats, Supplier<Mono<Void>> evict)
      implements ConnectionPoolMXBean {

    @Override
    public String getPoolName() {
      return poolName;
    }

    @Override
    public int getMaxSize() {
      return stats.get().maxSize();
    }

    @Override
    public int getAllocatedSize() {
      return stats.get().allocated();
    }

    @Override
    public int getIdleSize() {
      return stats.get().idle();
    }

    @Override
    public int getAcquiredSize() {
      return stats.get().acquired();
    }

    @Override
    public int getPendingAcquireSize() {
      return stats.get().pending();
    }

    @Override
    public long getAcquireCount() {
      return stats.get().acquires();
    }

    @Override
    public long getTimeoutCount() {
      return stats.get().timeouts();
    }

    @Override
    public long getRejectionCount() {
      return stats.get().rejections();
    }

    @Override
    public long getCreatedCount() {
      return stats.get().created();
    }

    @Override
    public long getClosedCount() {
      return stats.get().closed();
    }

    @Override
    public long getCreateFailureCount() {
      return stats.get().createFailures();
    }

    @Override
    public long getUnavailableCount() {
      return stats.get().unavailable();
    }

    @Override
    public long getAbandonedCount() {
      return stats.get().abandoned();
    }

    @Override
    public long getLeakCount() {
      return stats.get().leaks();
    }

    @Override
    public void softEvict() {
      evict.get().subscribe(null, e -> {});
    }
  }
}
