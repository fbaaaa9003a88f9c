package io.lagoon.examples.webflux;

/** The body of {@code POST /items}; {@code quantity} defaults to 0. */
public record NewItem(String name, Integer quantity) {}
