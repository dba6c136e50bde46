package dev.skiff.spring;

import java.lang.annotation.Documented;
import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;

/**
 * Binds one job variable to a parameter, converted to the parameter's type with Jackson. A
 * missing variable is null (an error for a primitive parameter: the job fails).
 */
@Target(ElementType.PARAMETER)
@Retention(RetentionPolicy.RUNTIME)
@Documented
public @interface Variable {
  /** The variable's name; empty: the parameter's name (compile with {@code -parameters}). */
  String value() default "";
}
