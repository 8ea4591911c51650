// notify_recv PATH [--no-read]: binds a Unix datagram socket at PATH (what systemd's NOTIFY_SOCKET
// is) and prints every datagram it receives as one line, newlines inside it shown as "|"; with
// --no-read it never reads (a hung receiver whose queue fills). Used by
// test/integration/systemd-notify.test.ts to watch what latchkeyd tells systemd.
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 2 && !(argc == 3 && strcmp(argv[2], "--no-read") == 0)) {
        fprintf(stderr, "usage: notify_recv PATH [--no-read]\n");
        return 64;
    }
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(argv[1]) >= sizeof sa.sun_path)
        return 64;
    strcpy(sa.sun_path, argv[1]);
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("notify_recv");
        return 1;
    }
    printf("listening\n");
    fflush(stdout);
    if (argc == 3)
        for (;;)
            pause();
    char buf[4096];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
        if (n < 0)
            return 1;
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] == '\n')
                buf[i] = '|';
        buf[n] = '\0';
        printf("%s\n", buf);
        fflush(stdout);
    }
}
