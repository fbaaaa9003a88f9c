package io.lagoon.examples.webflux;

import java.time.OffsetDateTime;

/** A stored item. */
public record Item(long id, String name, int quantity, OffsetDateTime createdAt) {}
