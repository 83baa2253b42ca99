# frozen_string_literal: true

# Jobs of the example app. Each run of RecordingJob or WriteJob leaves one JSON line in shared/jobs.log, so
# end-to-end tests can tell which jobs ran, in which process, from which release and app version.
require "json"
require "sidekiq"
require "time"

# ruby-redis 4.8 (Debian 12's) warns about calls Sidekiq 6.4.1 makes on every fetch; keep the journal readable.
# Sidekiq 7 talks to Redis through redis-client and never loads Redis.
Redis.silence_deprecations = true if defined?(Redis) && Redis.respond_to?(:silence_deprecations=)

class RecordingJob
  include Sidekiq::Job

  LOG = ENV.fetch("SIDEKIQ_FLEET_JOBS_LOG", "/var/www/example/local/shared/jobs.log")
  # The release directory this process loaded its code from: shows whether a restart picked up a deploy.
  RELEASE = File.basename(File.realpath(File.expand_path("..", __dir__)))

  def perform(id, sleep_seconds = 0)
    # When this process took the job: the restart benchmark measures the gap between job starts.
    started = Time.now.utc
    sleep(sleep_seconds.to_f) if sleep_seconds.to_f.positive?
    line = JSON.generate(
      "id" => id,
      "pid" => Process.pid,
      "version" => ENV["SIDEKIQ_FLEET_APP_VERSION"],
      "release" => RELEASE,
      "jid" => jid,
      "started" => started.iso8601(3),
      "at" => Time.now.utc.iso8601(3)
    )
    # One write(2) on an O_APPEND descriptor, under flock: lines from concurrent threads and
    # processes never interleave or tear.
    RecordingJob.record(line)
  end

  def self.record(line)
    File.open(LOG, File::WRONLY | File::APPEND | File::CREAT, 0o644) do |f|
      f.flock(File::LOCK_EX)
      f.syswrite("#{line}\n")
    end
  end
end

# Writes one line to the given path, as job code that touches the file system would, and records whether
# the write worked. A refused write is recorded, then raised, so the job also fails as it would in an app.
class WriteJob
  include Sidekiq::Job
  sidekiq_options retry: false

  def perform(id, path)
    File.open(path, File::WRONLY | File::APPEND | File::CREAT, 0o644) { |f| f.syswrite("#{id}\n") }
    record(id, path, nil)
  rescue SystemCallError => e
    record(id, path, e.class.name)
    raise
  end

  private

  def record(id, path, error)
    RecordingJob.record(JSON.generate("id" => id, "pid" => Process.pid, "path" => path, "error" => error,
                                      "jid" => jid, "at" => Time.now.utc.iso8601(3)))
  end
end
