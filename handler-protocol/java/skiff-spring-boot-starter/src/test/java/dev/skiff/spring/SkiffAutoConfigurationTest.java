package dev.skiff.spring;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;
import org.springframework.boot.autoconfigure.AutoConfigurations;
import org.springframework.boot.autoconfigure.jackson.JacksonAutoConfiguration;
import org.springframework.boot.test.context.runner.ApplicationContextRunner;

class SkiffAutoConfigurationTest {
  private final ApplicationContextRunner runner = new ApplicationContextRunner()
      .withConfiguration(AutoConfigurations.of(JacksonAutoConfiguration.class,
          SkiffAutoConfiguration.class))
      .withPropertyValues("skiff.exit-on-drain=false", "skiff.socket=/nonexistent/skiff.sock");

  static class Unbindable {
    @SkiffJob("bad")
    void bad(String what) {}
  }

  static class Twice {
    @SkiffJob("same")
    void one() {}

    @SkiffJob("same")
    void two() {}
  }

  @Test
  void bindsTheProperties() {
    runner.withPropertyValues("skiff.capacity=9", "skiff.name=n", "skiff.backoff-max=2s",
            "skiff.batch=false")
        .run(ctx -> {
          SkiffProperties p = ctx.getBean(SkiffProperties.class);
          assertThat(p.getCapacity()).isEqualTo(9);
          assertThat(p.getName()).isEqualTo("n");
          assertThat(p.getBackoffMax()).hasSeconds(2);
          assertThat(p.isBatch()).isFalse();
          assertThat(ctx.getBean(SkiffRunner.class).isFinished()).isTrue(); // nothing to serve
        });
  }

  @Test
  void canBeSwitchedOff() {
    runner.withPropertyValues("skiff.enabled=false")
        .run(ctx -> assertThat(ctx).doesNotHaveBean(SkiffRunner.class));
  }

  @Test
  void aParameterItCannotBindFailsTheStart() {
    runner.withBean(Unbindable.class).run(ctx -> assertThat(ctx).hasFailed()
        .getFailure().rootCause().hasMessageContaining("cannot bind parameter what"));
  }

  @Test
  void aJobTypeServedTwiceFailsTheStart() {
    runner.withBean(Twice.class).run(ctx -> assertThat(ctx).hasFailed()
        .getFailure().rootCause().hasMessageContaining("same is served by both"));
  }
}
