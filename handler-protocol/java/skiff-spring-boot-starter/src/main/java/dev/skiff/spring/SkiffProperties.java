package dev.skiff.spring;

import java.time.Duration;
import org.springframework.boot.context.properties.ConfigurationProperties;

/**
 * {@code skiff.*} in application.yaml. The environment variable {@code SKIFF_SOCKET} sets {@code
 * skiff.socket} too (Spring's relaxed binding), which is what skiff's pod spec provides.
 */
@ConfigurationProperties("skiff")
public class SkiffProperties {
  /** Serve the annotated methods (false: the starter does nothing). */
  private boolean enabled = true;
  /** skiff's handler socket. */
  private String socket = "/run/skiff/handler.sock";
  /** The handler's name in skiff's logs and metrics; default spring.application.name. */
  private String name;
  /** Most tasks in flight at once. */
  private int capacity = 4;
  /** Exit the application (status 0) once skiff has drained the handler. */
  private boolean exitOnDrain = true;
  /** First reconnect delay; doubles up to backoff-max. */
  private Duration backoffInitial = Duration.ofMillis(100);
  private Duration backoffMax = Duration.ofSeconds(5);
  /** Run functions on virtual threads when the runtime has them (JDK 21+). */
  private boolean virtualThreads = true;
  /**
   * Protocol 1.4 batches: skiff may send several tasks in one frame, and results ready together
   * leave in one frame (false: one frame per task and per result).
   */
  private boolean batch = true;

  public boolean isEnabled() {
    return enabled;
  }

  public void setEnabled(boolean enabled) {
    this.enabled = enabled;
  }

  public String getSocket() {
    return socket;
  }

  public void setSocket(String socket) {
    this.socket = socket;
  }

  public String getName() {
    return name;
  }

  public void setName(String name) {
    this.name = name;
  }

  public int getCapacity() {
    return capacity;
  }

  public void setCapacity(int capacity) {
    this.capacity = capacity;
  }

  public boolean isExitOnDrain() {
    return exitOnDrain;
  }

  public void setExitOnDrain(boolean exitOnDrain) {
    this.exitOnDrain = exitOnDrain;
  }

  public Duration getBackoffInitial() {
    return backoffInitial;
  }

  public void setBackoffInitial(Duration backoffInitial) {
    this.backoffInitial = backoffInitial;
  }

  public Duration getBackoffMax() {
    return backoffMax;
  }

  public void setBackoffMax(Duration backoffMax) {
    this.backoffMax = backoffMax;
  }

  public boolean isVirtualThreads() {
    return virtualThreads;
  }

  public void setVirtualThreads(boolean virtualThreads) {
    this.virtualThreads = virtualThreads;
  }

  public boolean isBatch() {
    return batch;
  }

  public void setBatch(boolean batch) {
    this.batch = batch;
  }
}
