"""Running a model: compiled and eager predictors, model setup, memory, huge pages, threads."""
