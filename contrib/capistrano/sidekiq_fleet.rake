# sidekiq-fleet's Capistrano tasks: sidekiq:quiet, sidekiq:stop, sidekiq:start, sidekiq:restart and
# sidekiq:status run the control script that `pulumi up` installed on each host, as the SSH user, and
# a deploy restarts Sidekiq once the new release is published.
#
# It replaces capistrano-sidekiq, which defines the same task names: remove `require
# "capistrano/sidekiq"` and its install_plugin lines from the Capfile (and the gem from the Gemfile),
# then either copy this file to lib/capistrano/tasks/ (the default Capfile imports every .rake there) or
# add to the Capfile:
#
#   import "/path/to/sidekiq-fleet/contrib/capistrano/sidekiq_fleet.rake"
#
# Settings, in config/deploy.rb or a stage file:
#
#   set :sidekiq_fleet_roles, :sidekiq                        # the servers the tasks run on
#   set :sidekiq_fleet_control, "/usr/local/sbin/sidekiqctl"  # /usr/local/sbin/<sidekiq.unitName>ctl
#   set :sidekiq_fleet_scope, :system                         # :user for sidekiq.scope: user
#   set :sidekiq_fleet_default_hooks, true                    # false: no restart after deploy:published

require "shellwords"

SIDEKIQ_FLEET_VERBS = %w[quiet stop start restart status].freeze

# Both would run on every call, each restarting Sidekiq its own way.
SIDEKIQ_FLEET_VERBS.each do |verb|
  next unless Rake::Task.task_defined?("sidekiq:#{verb}")

  raise "sidekiq_fleet.rake: sidekiq:#{verb} is defined already (by capistrano-sidekiq?); remove that " \
        "plugin from the Capfile, as sidekiq_fleet.rake replaces it"
end

namespace :load do
  task :defaults do
    set_if_empty :sidekiq_fleet_roles, :sidekiq
    set_if_empty :sidekiq_fleet_control, "/usr/local/sbin/sidekiqctl"
    set_if_empty :sidekiq_fleet_scope, :system
    set_if_empty :sidekiq_fleet_default_hooks, true
  end
end

# The command line of a verb. SSHKit joins execute's arguments with spaces into one line for the
# remote shell, unquoted, so each word is quoted here; a line with a space also skips SSHKit's command
# map and default_env, so the dry run prints exactly what runs. In system scope the deploy user's
# sudoers drop-in allows `<control> <verb>` with no other argument, and -n fails instead of prompting.
def sidekiq_fleet_command(verb)
  control = fetch(:sidekiq_fleet_control).to_s
  unless control.start_with?("/")
    raise ArgumentError, "sidekiq_fleet_control: #{control.inspect} is not an absolute path"
  end

  scope = fetch(:sidekiq_fleet_scope)
  case scope.to_s
  when "system" then Shellwords.join(["sudo", "-n", control, verb])
  when "user" then Shellwords.join([control, verb])
  else raise ArgumentError, "sidekiq_fleet_scope: #{scope.inspect}; expected :system or :user"
  end
end

namespace :sidekiq do
  desc "Quiet Sidekiq on the sidekiq-fleet hosts: no new jobs"
  task :quiet do
    on roles(fetch(:sidekiq_fleet_roles)) do
      execute sidekiq_fleet_command("quiet")
    end
  end

  desc "Stop every Sidekiq slot on the sidekiq-fleet hosts, gracefully"
  task :stop do
    on roles(fetch(:sidekiq_fleet_roles)) do
      execute sidekiq_fleet_command("stop")
    end
  end

  desc "Start the enabled Sidekiq slots on the sidekiq-fleet hosts"
  task :start do
    on roles(fetch(:sidekiq_fleet_roles)) do
      execute sidekiq_fleet_command("start")
    end
  end

  # One host after the other, stopping at the first failure, as `sidekiq-fleet restart` with
  # rollout.batchSize 1: a release that does not boot stays on one host. The script returns once the
  # new process is ready, so no pause between hosts (SSHKit's default is 2 s).
  desc "Restart Sidekiq on the sidekiq-fleet hosts with no gap, host by host"
  task :restart do
    on roles(fetch(:sidekiq_fleet_roles)), in: :sequence, wait: 0 do
      execute sidekiq_fleet_command("restart")
    end
  end

  # capture, as the formatter may hide a command's output.
  desc "Show each Sidekiq slot on the sidekiq-fleet hosts"
  task :status do
    on roles(fetch(:sidekiq_fleet_roles)) do |host|
      capture(sidekiq_fleet_command("status")).each_line { |line| puts "#{host.hostname} #{line}" }
    end
  end
end

# Hooked when a deploy starts rather than here, so that deploy.rb and the stage file, loaded after
# this file, decide (as capistrano-sidekiq does).
namespace :deploy do
  before :starting, :sidekiq_fleet_hooks do
    after "deploy:published", "sidekiq:restart" if fetch(:sidekiq_fleet_default_hooks)
  end
end
