package dev.skiff.spring;

import com.fasterxml.jackson.databind.ObjectMapper;
import org.springframework.beans.factory.ObjectProvider;
import org.springframework.boot.autoconfigure.AutoConfiguration;
import org.springframework.boot.autoconfigure.condition.ConditionalOnMissingBean;
import org.springframework.boot.autoconfigure.condition.ConditionalOnProperty;
import org.springframework.boot.autoconfigure.jackson.JacksonAutoConfiguration;
import org.springframework.boot.context.properties.EnableConfigurationProperties;
import org.springframework.context.annotation.Bean;
import org.springframework.core.env.Environment;

/** Serves the application's {@link SkiffJob} and {@link SkiffTopic} methods through skiff. */
@AutoConfiguration(after = JacksonAutoConfiguration.class)
@ConditionalOnProperty(prefix = "skiff", name = "enabled", matchIfMissing = true)
@EnableConfigurationProperties(SkiffProperties.class)
public class SkiffAutoConfiguration {
  @Bean
  static SkiffMethodCollector skiffMethodCollector(Environment env) {
    return new SkiffMethodCollector(env);
  }

  @Bean
  @ConditionalOnMissingBean
  SkiffRunner skiffRunner(SkiffProperties props, ObjectProvider<ObjectMapper> mapper,
      Environment env, SkiffMethodCollector collector) {
    return new SkiffRunner(props, mapper.getIfAvailable(ObjectMapper::new), env, collector);
  }
}
