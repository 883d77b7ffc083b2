"""What a batch looks like to people: live progress, status, notifications, the HTML report (its
charts, SVG, input thumbnails, --watch), exports, Prometheus metrics, the console."""

__all__ = ["progress", "status", "notify", "report", "export", "charts", "svg", "inputs", "follow",
           "metrics", "console", "dataset_inputs"]
